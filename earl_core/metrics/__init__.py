"""Metrics maths: AP (VOC 101-point and COCO), rater statistics, the Markdown mAP report."""
