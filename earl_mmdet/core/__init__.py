"""Pure algorithms of earl-mmdet: numpy / torch only, never mmdet or mmengine.

Everything here can be called from any framework (Kaggle notebooks, YOLO repos).
"""
