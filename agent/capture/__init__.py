"""Frame sources for the agent: webcam, video file, image folder, composed scenes."""

from agent.capture.sources import (
    Frame,
    FrameSource,
    FrameSourceError,
    ImageFolderSource,
    VideoFileSource,
    WebcamSource,
    list_cameras,
)

__all__ = [
    "Frame",
    "FrameSource",
    "FrameSourceError",
    "ImageFolderSource",
    "VideoFileSource",
    "WebcamSource",
    "list_cameras",
]
