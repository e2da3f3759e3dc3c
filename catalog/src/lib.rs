//! catalog: pools and queue placement behind the `CatalogBackend` seam, served over gRPC.
