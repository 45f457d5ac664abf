// placeholder; replaced by the fathom_config implementation
