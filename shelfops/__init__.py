"""shelfops: put pretrained transformers behind e-commerce search and recommendation."""

__version__ = "0.1.0"
