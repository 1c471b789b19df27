"""Language models and their data: configs, profiles, texts, tokenizers, token blocks, devices."""
