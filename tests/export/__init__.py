"""The export tier: model export and the references it is checked against."""
