"""Face tracks in video, and who each one is: detections are matched to tracks by box overlap,
a track is identified by the mean of its recent encodings (frames of a moving face vary the way
jitters do), and its name changes only when two identifications in a row agree, so names do
not flicker. Turns key frames into appear / change / leave events."""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np

from . import faces
from .service import FaceService

REIDENTIFY_SECONDS = 1.0  # encode a named face again this often; an unknown one at each key frame
POOLED = 5  # a track is identified by the mean of its last POOLED encodings
MATCH_OVERLAP = 0.3  # a detection continues a track when their boxes overlap this much (IoU)
LEAVE_SECONDS = 0.5  # a track that no detection has continued for this long has left


@dataclass
class Track:
    """One face followed from frame to frame, and who it is.

    A track is identified by the mean of its last few encodings: frames of a moving face vary
    the way jitters do, so the mean is steadier than any one frame. Its name changes only when
    two identifications in a row agree on the new one, so a single odd frame does not flicker.
    """

    id: int
    box: faces.Box
    first_frame: int
    first_time: float
    last_frame: int
    last_time: float
    encoded_time: float = -1e9
    encodings: deque = field(default_factory=lambda: deque(maxlen=POOLED))
    name: str | None = None
    confidence: float | None = None
    announced: bool = False
    challenger: tuple | None = None  # a different decision waiting for a second one

    def pooled(self, encoding: np.ndarray) -> np.ndarray:
        """Add one encoding; return the mean of the recent ones."""
        self.encodings.append(encoding)
        return np.mean(self.encodings, axis=0)

    def decide(self, name: str | None, confidence: float | None) -> bool:
        """Take one identification; return whether the track's name changed."""
        if not self.announced or name == self.name:
            self.name, self.confidence, self.challenger = name, confidence, None
            return False
        if self.challenger is None or self.challenger[0] != name:
            self.challenger = (name, confidence)
            return False
        self.name, self.confidence, self.challenger = name, confidence, None
        return True



class Watcher:
    """Turns frames and their detections into appear / change / leave events."""

    def __init__(self, service: FaceService, fps: float, tolerance: float | None,
                 extras: Callable[[Track, np.ndarray | None], dict] | None = None) -> None:
        """
        :param extras: given a track and the frame it was identified in (None for a leave),
            returns fields to add to its event
        """
        self.service, self.fps, self.tolerance, self.extras = service, fps, tolerance, extras
        self.tracks: dict[int, Track] = {}
        self.next_id = 1
        self.seen: set[str] = set()
        self.count = 0

    def update(self, index: int, when: float, rgb: np.ndarray,
               boxes: list[faces.Box]) -> list[dict]:
        """Match a key frame's detections to the tracks, identify, and report the changes."""
        events = []
        unmatched = self._associate(boxes, index, when)
        for box in unmatched:
            self.tracks[self.next_id] = Track(self.next_id, box, index, when, index, when)
            self.next_id += 1
        due = [t for t in self.tracks.values() if t.last_time == when
               and (t.name is None or when - t.encoded_time >= REIDENTIFY_SECONDS)]
        events += self._identify(due, index, when, rgb)
        for track in [t for t in self.tracks.values() if when - t.last_time > LEAVE_SECONDS]:
            events.append(self._leave(track, index, when))
        return events

    def finish(self, index: int, when: float) -> list[dict]:
        """Every track still open leaves at the end of the video (its last frame, index)."""
        return [self._leave(track, index, when) for track in list(self.tracks.values())]

    def _associate(self, boxes: list[faces.Box], index: int, when: float) -> list[faces.Box]:
        """Continue tracks with the detections that overlap them most; return the rest."""
        pairs = sorted(((box.overlap(track.box), i, track.id)
                        for i, box in enumerate(boxes) for track in self.tracks.values()),
                       reverse=True)
        used_boxes, used_tracks = set(), set()
        for overlap, i, track_id in pairs:
            if overlap < MATCH_OVERLAP or i in used_boxes or track_id in used_tracks:
                continue
            track = self.tracks[track_id]
            track.box, track.last_frame, track.last_time = boxes[i], index, when
            used_boxes.add(i)
            used_tracks.add(track_id)
        return [box for i, box in enumerate(boxes) if i not in used_boxes]

    def _identify(self, due: list[Track], index: int, when: float,
                  rgb: np.ndarray) -> list[dict]:
        events = []
        for track, encoding in zip(due, faces.encode(rgb, [t.box for t in due])):
            match = self.service.identify(track.pooled(encoding), self.tolerance, top_k=1)
            track.encoded_time = when
            changed = track.decide(match.name, match.confidence)
            if not track.announced:
                track.announced = True
                events.append(self._event("appear", track, index, when, rgb))
            elif changed:
                events.append(self._event("change", track, index, when, rgb))
            if track.name:
                self.seen.add(track.name)
        return events

    def _leave(self, track: Track, index: int, when: float) -> dict:
        """A track's leave, as of the frame where it is known (events come in frame order),
        with the frame and time it was last seen in."""
        del self.tracks[track.id]
        event = self._event("leave", track, index, when)
        event["last_frame"], event["last_time"] = track.last_frame, round(track.last_time, 3)
        event["duration"] = round(track.last_time - track.first_time + 1 / self.fps, 3)
        return event

    def _event(self, kind: str, track: Track, index: int, when: float,
               rgb: np.ndarray | None = None) -> dict:
        event = {"event": kind, "track": track.id, "name": track.name,
                 "confidence": track.confidence, "frame": index, "time": round(when, 3),
                 "box": asdict(track.box)}
        return event if self.extras is None else event | self.extras(track, rgb)


def names_by_frame(events: list[dict], frames: int) -> list[set]:
    """For each frame, the names of the faces on screen (None for an unknown face), rebuilt
    from watch's events: a track holds its name from each event to the next, and to the last
    frame it was seen in before its leave."""
    tracks: dict[int, list[dict]] = {}
    for event in events:
        if event["event"] in ("appear", "change", "leave"):
            tracks.setdefault(event["track"], []).append(event)
    on_screen: list[set] = [set() for _ in range(frames)]
    for track_events in tracks.values():
        for current, following in zip(track_events, track_events[1:]):
            end = (following["last_frame"] + 1 if following["event"] == "leave"
                   else following["frame"])
            for frame in range(current["frame"], min(end, frames)):
                on_screen[frame].add(current["name"])
    return on_screen
