"""Message Batches: durable storage of batches (``store``) and the worker pool that runs them (``runner``)."""
