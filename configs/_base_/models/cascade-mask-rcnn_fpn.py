# Cascade Mask R-CNN heads as the official Swin and ConvNeXt detection configs set them up: mmdet's
# cascade-mask-rcnn_r50_fpn (three stages trained at IoU 0.5 / 0.6 / 0.7, 2000 training proposals, smooth-L1
# RPN loss, anchors crossing the border ignored) with "4conv1fc" box heads: four 3x3 convs with BatchNorm + one
# fc, class-specific regression of decoded boxes with a GIoU loss (weight 10).
#
# A leaf puts it on its family's Mask R-CNN config, which already holds the backbone, data, schedule and
# optimizer:
#     _base_ = ['./mask-rcnn_<backbone>_fpn_1x_coco.py', '../_base_/models/cascade-mask-rcnn_fpn.py']
#     model = {{_base_.cascade_mask_rcnn}}
# mmengine merges sibling bases only when their keys differ, so this file holds one variable, not `model`, and
# states what mmdet's Cascade base changes in mmdet's Mask R-CNN base (tests/test_configs.py checks the result
# against mmdet's cascade-mask-rcnn_r50_fpn.py).
#
# BatchNorm, not the official SyncBN: vitdense configs run as one process and on CPUs (SyncBN has no CPU
# kernel); tools/train.py --sync-bn turns it into SyncBN for a multi-GPU run. The statistics are over RoIs
# (512 per image x 7x7), so per-GPU batches already give them plenty of samples.
cascade_mask_rcnn = dict(
    type='CascadeRCNN',
    rpn_head=dict(loss_bbox=dict(_delete_=True, type='SmoothL1Loss', beta=1.0 / 9.0, loss_weight=1.0)),
    roi_head=dict(
        type='CascadeRoIHead',
        num_stages=3,
        stage_loss_weights=[1, 0.5, 0.25],
        bbox_head=[
            dict(type='ConvFCBBoxHead', num_shared_convs=4, num_shared_fcs=1, in_channels=256, conv_out_channels=256,
                 fc_out_channels=1024, roi_feat_size=7, num_classes=80,
                 bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0., 0., 0., 0.], target_stds=stds),
                 reg_class_agnostic=False, reg_decoded_bbox=True, norm_cfg=dict(type='BN', requires_grad=True),
                 loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
                 loss_bbox=dict(type='GIoULoss', loss_weight=10.0))
            for stds in ([0.1, 0.1, 0.2, 0.2], [0.05, 0.05, 0.1, 0.1], [0.033, 0.033, 0.067, 0.067])]),
    train_cfg=dict(
        rpn=dict(allowed_border=0),
        rpn_proposal=dict(max_per_img=2000),
        rcnn=[
            dict(assigner=dict(type='MaxIoUAssigner', pos_iou_thr=iou, neg_iou_thr=iou, min_pos_iou=iou,
                               match_low_quality=False, ignore_iof_thr=-1),
                 sampler=dict(type='RandomSampler', num=512, pos_fraction=0.25, neg_pos_ub=-1,
                              add_gt_as_proposals=True),
                 mask_size=28, pos_weight=-1, debug=False)
            for iou in (0.5, 0.6, 0.7)]))
