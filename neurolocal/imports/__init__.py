"""Models written elsewhere, as neurolocal graphs (PyTorch by torch.fx: `torch_fx`)."""
