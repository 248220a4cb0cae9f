"""Reading and writing: multi-rater COCO files, atomic output files."""
