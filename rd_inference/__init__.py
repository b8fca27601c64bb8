"""rd_inference: test-time scaling for diffusion image models with yes-token VLM verifiers."""

__version__ = "0.1.0"
