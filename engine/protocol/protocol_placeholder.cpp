// placeholder; replaced by the fathom_protocol implementation
