"""The training pipeline: hyperparameters, tf.data input, models, the fit loop, export."""
