"""One trial, start to end: `train.train_trial` builds the model and the loaders, trains with the
recipe's schedule (`schedule`), runs each step (`step`), evaluates, checkpoints (`checkpoint`,
through a `session`), beats a heartbeat (`heartbeat`), and, for a data-parallel trial, keeps its
ranks in step (`data_parallel`); `backends` holds the per-device numerics and memory settings.

It reads the trial it is given and reports rows through its session; it never reads another
trial's results, and knows nothing of Ray (benchmark/fleet/ runs it on Ray).
"""
