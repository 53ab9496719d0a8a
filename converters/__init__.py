"""web2code-convert: CrystalChat-7B-Web2Code PyTorch checkpoint -> a verified GGUF pair."""
