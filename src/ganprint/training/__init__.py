"""What the trainers (stega, StyleGAN2, scalable, diffusion) share: the run folder (`run`), the training state
(`state`), the data pipeline (`data`), the tick and snapshot clock and named statistics (`clock`), the GAN losses
with R1 and path length (`gan_losses`), EMA, optimisers and gradient averaging, image grids.

A run folder holds `config.json` (guarded: a re-run with other settings is refused), `log.txt`, `stats.jsonl`,
`snapshots/`, `training-state-<step:08d>.pt` and the trainer's exports. States are numbered by optimiser step in
every trainer; randomness (the data order included) is re-derived from (seed, rank, step), so a state holds no
random generator.
"""
