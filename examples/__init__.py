"""Examples that load as modules, e.g. ``flchain simulate --client examples.numpy_client:make_client``."""
