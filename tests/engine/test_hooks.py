import numpy as np
import torch
from mmengine.logging import HistoryBuffer

from vitdense.engine.hooks import SafeCheckpointHook, from_plain, to_plain


def test_message_hub_state_survives_weights_only_round_trip(tmp_path):
    buffer = HistoryBuffer(np.array([0.5, 0.25, 0.125]), np.array([1, 1, 2]), max_length=100)
    checkpoint = {
        'meta': {'epoch': 1, 'iter': 7, 'seed': np.int64(3), 'dataset_meta': {'classes': ('a', 'b')}},
        'message_hub': {'log_scalars': {'train/loss': buffer}, 'runtime_info': {'iter': np.int64(7)},
                        'resumed_keys': {'iter': True}},
        'state_dict': {'w': torch.ones(2)},
    }
    SafeCheckpointHook().before_save_checkpoint(None, checkpoint)
    path = tmp_path / 'ckpt.pth'
    torch.save(checkpoint, path)
    loaded = torch.load(path, weights_only=True)  # would raise on HistoryBuffer / numpy globals
    SafeCheckpointHook().after_load_checkpoint(None, loaded)
    restored = loaded['message_hub']['log_scalars']['train/loss']
    assert isinstance(restored, HistoryBuffer)
    assert np.allclose(restored._log_history, [0.5, 0.25, 0.125])
    assert np.allclose(restored._count_history, [1, 1, 2])
    assert restored.max_length == 100
    assert loaded['meta']['seed'] == 3 and loaded['message_hub']['runtime_info']['iter'] == 7


def test_to_plain_is_identity_on_plain_values():
    value = {'a': [1, 2.5, 'x', (True, None)], 'b': {'c': 'd'}}
    assert from_plain(to_plain(value)) == value
    assert to_plain(np.arange(3)).tolist() == [0, 1, 2]
