"""VinDr-CXR label rows shared by the parser's tests (test_vindr.py) and the converter's
(tests/test_tools/test_convert_vindr.py)."""

from __future__ import annotations

# The headers of the two releases, as they are written in the real files.
KAGGLE_HEADER = 'image_id,class_name,class_id,rad_id,x_min,y_min,x_max,y_max'
PHYSIONET_HEADER = 'image_id,rad_id,class_name,x_min,y_min,x_max,y_max'

# Three images: 'aaa' positive (R8 and R9 one box each, R10 'No finding'), 'bbb' negative
# (three 'No finding' readers), 'ccc' read by R1, R8, R9 with one box of R1.
KAGGLE_ROWS = [
    'aaa,Nodule/Mass,8,R8,10,20,30,50',
    'aaa,Nodule/Mass,8,R9,12,18,31,52',
    'aaa,No finding,14,R10,,,,',
    'bbb,No finding,14,R8,,,,',
    'bbb,No finding,14,R9,,,,',
    'bbb,No finding,14,R10,,,,',
    'ccc,Pulmonary fibrosis,13,R1,5,5,25,25',
    'ccc,No finding,14,R8,,,,',
    'ccc,No finding,14,R9,,,,',
]
