"""Sparse autoencoders: TopK and ReLU+L1 SAEs, a TopK crosscoder, training, activation capture.

    >>> from clbench.sae.train import SAETrainConfig, train_sae
    >>> sae, stats = train_sae(x, SAETrainConfig(n_latents=512, k=16, epochs=2))
"""
