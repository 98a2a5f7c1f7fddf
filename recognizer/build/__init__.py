"""Build: enrol a folder-per-person tree, resumably, with worker processes (``folder`` walks
and records, ``pool`` runs the per-file work)."""

from .folder import IMAGE_SUFFIXES, BuildReport, build, file_outcome, progress_bar

__all__ = ["IMAGE_SUFFIXES", "BuildReport", "build", "file_outcome", "progress_bar"]
