// placeholder; replaced by the fathom_tokenizer implementation
