package kube

// secretsLoaded is how many Secrets the tracker holds in the build cache.
func (h *handler) secretsLoaded() int64 { return h.secrets.nLoaded.Load() }
