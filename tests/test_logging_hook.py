"""The epoch log line shows the epoch's mean of each loss term, not the last batch's."""

from __future__ import annotations

import logging
import math
from types import SimpleNamespace

from facedet.engine.hooks import LoggingHook


def test_the_epoch_line_shows_the_mean_of_each_loss_term(caplog):
    trainer = SimpleNamespace(steps_per_epoch=3, iter_in_epoch=0, epoch=0, max_epochs=2, step=0, lr=0.01,
                              train_loader=SimpleNamespace(batch_size=4), metrics={}, is_best=False, losses={},
                              world_size=1, grad_norm=math.nan, skipped_steps=0, tb_writer=None)
    hook = LoggingHook(None, progress=False)
    hook.trainer = trainer
    hook.before_train()
    hook.before_epoch()
    steps = [{"loss": 1.0, "loss_box": 0.25, "num_pos": 3.0},
             {"loss": 3.0, "loss_box": 0.75, "num_pos": 5.0},
             {"loss": math.nan, "loss_box": math.nan, "num_pos": 4.0}]  # a skipped non-finite step
    for losses in steps:
        trainer.losses = losses
        trainer.step += 1
        hook.after_step()
    with caplog.at_level(logging.INFO, logger="facedet"):
        hook.after_epoch()
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("epoch 1/2"))
    # the last batch's loss is NaN; the mean of the finite steps is 2.0
    assert line.startswith("epoch 1/2 loss 2.0000 loss_box 0.5000 (epoch means)"), line
    assert "num_pos" not in line  # a count, not a loss term
    assert hook.epoch_losses()["num_pos"] == 4.0

    hook.before_epoch()  # the next epoch starts its own mean
    trainer.epoch, trainer.losses = 1, {"loss": 5.0}
    hook.after_step()
    assert hook.epoch_losses() == {"loss": 5.0}
    hook.after_train()
