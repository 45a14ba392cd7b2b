"""The zoo CNN as a torch module, IDX image data, and the zoo trainer."""
