//! Local job slots: `/bin/sh -c` children of kb, each in its own process group.
