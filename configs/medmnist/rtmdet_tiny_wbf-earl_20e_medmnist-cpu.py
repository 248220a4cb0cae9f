# The paper's method on RTMDet-tiny: WBF-fused boxes + EARL (c = T/R). EARL multiplies the
# positives' quality-focal and GIoU losses by c (docs/earl_heads.md, "RTMDet, ATSS and GFL");
# policy='soft' or 'ignore' in earl_cfg selects the other loss policies.
_base_ = './rtmdet_tiny_wbf_20e_medmnist-cpu.py'
model = dict(
    bbox_head=dict(type='EARLRTMDetSepBNHead', earl_cfg=dict(terms=('cls', 'bbox'), policy='earl'))
)
