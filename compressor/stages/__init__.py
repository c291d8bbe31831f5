"""The techniques, one module each, all implementing compressor.stages.base.Stage. Nothing is
registered here: a stage config names its class with `_target_`."""
