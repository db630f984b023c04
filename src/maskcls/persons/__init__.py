"""Person-consistent prediction: group photos into persons, then make each group's predictions agree.

``group.py`` clusters photos (colour of the regions a mask never covers, face descriptors, backbone
features); ``ensemble/person_consistency.py`` combines a group's gender x age evidence and assigns its mask
states; ``attributes.py`` reads a person's gender and age off their unmasked photo with offline face models.
Import from the submodules: ``group`` needs torch (backbone features), ``attributes`` does not.
"""
