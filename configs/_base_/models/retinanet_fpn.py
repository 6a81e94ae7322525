# RetinaNet + FPN (mmdet's) with the backbone left to the including config. The FPN reads strides 8 / 16 / 32
# (the backbone's out_indices (1, 2, 3)) and adds P6 / P7 by stride-2 convs on the stride-32 input
# (add_extra_convs='on_input', mmdet's RetinaNet base), as mmdet's Swin RetinaNet does.
_base_ = 'mmdet::_base_/models/retinanet_r50_fpn.py'
model = dict(backbone=dict(_delete_=True), neck=dict(start_level=0))
