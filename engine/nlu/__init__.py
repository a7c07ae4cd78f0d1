"""Natural-language understanding: training data, tokenisation, classification, entities."""
