"""One module per live source; each writes into the :class:`console.store.ClusterStore`."""
