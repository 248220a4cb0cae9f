"""Data sources: VinDr-CXR conversion and sample walk, the MED-MNIST simulator and its raters."""
