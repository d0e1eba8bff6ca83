"""surrogates: fit smooth MLP surrogates and differentiate them exactly."""
