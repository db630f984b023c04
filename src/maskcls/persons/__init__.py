"""Person-consistent prediction: group photos into persons, then make each group's predictions agree.

``group.py`` clusters photos (colour of the regions a mask never covers, face descriptors, backbone
features); ``consistent.py`` combines a group's gender x age evidence and assigns its mask states.
Import from the submodules: ``consistent`` needs no torch (``predict --onnx --persons`` uses it), ``group``
does (backbone features).
"""
