"""The local backend: the classifier runs in warm worker processes on this machine."""
