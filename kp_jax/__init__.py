"""kp-jax: CNN image keypoint detection in JAX/Flax."""
