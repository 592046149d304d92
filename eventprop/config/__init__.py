"""The parameters of the simulators, one source for each key.

* ``parameter``: the record of a key, ``Parameter(default, rule, meaning, unit)``, and
  ``shared()``, the entry by which a simulator's table takes a shared key;
* ``shared``: ``SHARED``, the keys that mean the same in every simulator that has them
  (``SHARED["TAU_MEM"].default`` is the shared default of TAU_MEM);
* ``yinyang``, ``mnist``, ``shd``, ``dvs_gesture``, ``smnist``: each simulator's ``TABLE`` (its
  keys in the order of its ``p``) and ``PARAMETERS`` (every key as a Parameter);
* ``parameters``: a table -> defaults and rules, and the checks across keys;
* ``checks``, ``augmentation``: the validation rules, each describing its valid values;
* ``reference``: writes the Markdown reference pages (``python -m eventprop.config.reference``).
"""
