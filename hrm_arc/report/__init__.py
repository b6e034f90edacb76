"""Reports to look at: the predictions page of an adapt-and-predict output (`page`), the
reasoning steps of one task (`steps`) and a pretraining run's curves (`curves`)."""
