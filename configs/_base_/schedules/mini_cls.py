# Mini classification schedule: iteration-based, short warm-up, evaluation at the end; sized for a 2-core CPU.
# It changes the runtime's hooks and log processor, so it includes that runtime itself.
_base_ = '../default_runtime_cls.py'
max_iters = 60
train_cfg = dict(by_epoch=False, max_iters=max_iters, val_interval=max_iters)
val_cfg = dict()
test_cfg = dict()
param_scheduler = [
    dict(type='LinearLR', start_factor=0.05, by_epoch=False, begin=0, end=10),
    dict(type='CosineAnnealingLR', eta_min=0.0, by_epoch=False, begin=10, end=max_iters)]
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10, log_metric_by_epoch=False),
    checkpoint=dict(type='vitdense.AtomicCheckpointHook', by_epoch=False, interval=max_iters, max_keep_ckpts=1))
log_processor = dict(by_epoch=False)
# a fixed seed: a mini run gives back the numbers the README reports (same torch build, CPU)
randomness = dict(seed=0)
