"""maskcls: mask / gender / age classification of photos of people, end to end."""

__version__ = "0.1.0"
