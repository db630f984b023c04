"""Person-consistent prediction: group photos into persons, then make each group's predictions agree.

``group.py`` clusters photos (colour of the regions a mask never covers, face descriptors, backbone
features); ``consistent.py`` combines a group's gender x age evidence and assigns its mask states.
"""

from .consistent import PERSON_COLUMNS, GroupsError, add_person_columns, assign_masks, consistency_scores, mask_quota, person_answers, person_consistent_probs, read_groups
from .group import DEFAULT_FEATURES, choose_threshold, cluster_tree, cut_tree, embed, group_chunks, group_photos, grouping_scores, structured_groups

__all__ = [
    "DEFAULT_FEATURES",
    "PERSON_COLUMNS",
    "GroupsError",
    "add_person_columns",
    "assign_masks",
    "choose_threshold",
    "cluster_tree",
    "consistency_scores",
    "cut_tree",
    "embed",
    "group_chunks",
    "group_photos",
    "grouping_scores",
    "mask_quota",
    "person_answers",
    "person_consistent_probs",
    "read_groups",
    "structured_groups",
]
