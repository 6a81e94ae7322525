# Mini-data schedule: iteration-based, short warm-up, evaluation at the end; sized for a 2-core CPU.
# It changes the runtime's hooks and log processor, so it includes that runtime itself.
_base_ = '../default_runtime_det.py'
max_iters = 60
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = [dict(type='LinearLR', start_factor=0.05, by_epoch=False, begin=0, end=10)]
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=5, log_metric_by_epoch=False),
    checkpoint=dict(type='vitdense.AtomicCheckpointHook', by_epoch=False, interval=max_iters,
                    max_keep_ckpts=2))
log_processor = dict(by_epoch=False)
# a fixed seed: a mini run gives back the numbers the README reports (same torch build, CPU)
randomness = dict(seed=0)
