"""The model as a flat float32 vector, its contiguous partitions, and their wire formats."""
