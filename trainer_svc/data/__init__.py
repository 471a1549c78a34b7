"""Dataset readers: class folders, .lst + images, RecordIO .rec, TFRecord — one Sample model."""
