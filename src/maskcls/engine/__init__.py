"""The predictor engine: batches photos through a model (with TTA views); below training and inference."""
