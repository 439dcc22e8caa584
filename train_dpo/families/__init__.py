"""Model families of the Diffusion-DPO trainer (see :mod:`train_dpo.families.base`)."""
