"""dVRK-like arm models and a procedure-shaped motion: pure numpy functions of time.

PSMs have 6 joints and a jaw, the ECM has 4 joints. A procedure cycles through phases
(setup, dissection, tool change, suturing, retract); during a tool change the instrument
retracts to the cannula and the jaw opens. Everything is a deterministic function of
(arm, time), clipped to the joint limits, so tests can recompute what was published.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

PHASES: tuple[tuple[str, float], ...] = (
    ("setup", 0.10), ("dissection", 0.35), ("tool_change", 0.10), ("suturing", 0.35),
    ("retract", 0.10),
)
"""Procedure phases and their share of one cycle."""
TOOLS = ("large_needle_driver", "prograsp_forceps", "maryland_bipolar_forceps",
         "monopolar_curved_scissors")


@dataclass(frozen=True)
class ArmModel:
    """One arm: joint names, limits (rad or m) and whether it carries a jaw."""

    name: str
    kind: str  # "PSM" or "ECM"
    joints: tuple[str, ...]
    lower: tuple[float, ...]
    upper: tuple[float, ...]
    prismatic: tuple[str, ...]
    jaw: bool
    index: int = 0  # phase offset between arms

    @property
    def lower_arr(self) -> FloatArray:
        """Return the lower joint limits as an array."""
        return np.asarray(self.lower, dtype=np.float64)

    @property
    def upper_arr(self) -> FloatArray:
        """Return the upper joint limits as an array."""
        return np.asarray(self.upper, dtype=np.float64)


PSM_JOINTS = ("outer_yaw", "outer_pitch", "outer_insertion", "outer_roll",
              "outer_wrist_pitch", "outer_wrist_yaw")
PSM_LOWER = (-1.5, -0.9, 0.0, -4.5, -1.5, -1.5)
PSM_UPPER = (1.5, 0.9, 0.24, 4.5, 1.5, 1.5)
ECM_JOINTS = ("outer_yaw", "outer_pitch", "insertion", "outer_roll")
ECM_LOWER = (-1.5, -0.8, 0.0, -1.5)
ECM_UPPER = (1.5, 1.0, 0.23, 1.5)
JAW_LIMITS = (-0.35, 1.4)


def arm_model(name: str, index: int = 0) -> ArmModel:
    """Return the model of arm ``name``: ECM* is an endoscope arm, everything else a PSM."""
    if name.upper().startswith("ECM"):
        return ArmModel(name, "ECM", ECM_JOINTS, ECM_LOWER, ECM_UPPER, ("insertion",), False,
                        index)
    return ArmModel(name, "PSM", PSM_JOINTS, PSM_LOWER, PSM_UPPER, ("outer_insertion",), True,
                    index)


def phase_at(t: float, cycle_s: float, arm: ArmModel) -> tuple[str, int]:
    """Return (phase name, cycle number) at time ``t`` for ``arm``."""
    shifted = t + arm.index * 0.05 * cycle_s
    cycle, frac = divmod(shifted / cycle_s, 1.0)
    edge = 0.0
    for name, share in PHASES:
        edge += share
        if frac < edge:
            return name, int(cycle)
    return PHASES[-1][0], int(cycle)


def tool_at(t: float, cycle_s: float, arm: ArmModel) -> str:
    """Return the instrument mounted on a PSM at ``t`` (changes mid tool-change phase)."""
    shifted = t + arm.index * 0.05 * cycle_s
    cycle, frac = divmod(shifted / cycle_s, 1.0)
    swap_at = PHASES[0][1] + PHASES[1][1] + PHASES[2][1] / 2
    changes = int(cycle) + (1 if frac >= swap_at else 0)
    return TOOLS[(changes + arm.index) % len(TOOLS)]


def _phase_weights(t: FloatArray, cycle_s: float, arm: ArmModel) -> tuple[FloatArray, FloatArray]:
    """Return (activity 0..1, retraction 0..1) per time: smooth bumps over the phases."""
    frac = ((t + arm.index * 0.05 * cycle_s) / cycle_s) % 1.0
    starts = np.cumsum([0.0] + [share for _, share in PHASES])
    activity = np.zeros_like(frac)
    retraction = np.zeros_like(frac)
    for (name, _), lo, hi in zip(PHASES, starts[:-1], starts[1:], strict=True):
        inside = (frac >= lo) & (frac < hi)
        bump = np.sin(np.pi * (frac - lo) / (hi - lo)) ** 2
        if name in ("dissection", "suturing"):
            activity = np.where(inside, bump, activity)
        elif name in ("tool_change", "retract"):
            retraction = np.where(inside, bump, retraction)
    return activity, retraction


def joint_positions(arm: ArmModel, t: FloatArray, cycle_s: float = 60.0) -> FloatArray:
    """Return (n, joints) positions at times ``t`` (seconds), inside the joint limits."""
    t = np.asarray(t, dtype=np.float64).reshape(-1)
    lower, upper = arm.lower_arr, arm.upper_arr
    mid, half = (lower + upper) / 2, (upper - lower) / 2
    j = np.arange(len(arm.joints), dtype=np.float64)
    activity, retraction = _phase_weights(t, cycle_s, arm)
    freq = 0.15 + 0.07 * j + 0.02 * arm.index  # slow, arm-specific motion
    slow = np.sin(2 * np.pi * freq[None, :] * t[:, None] + j[None, :] * 0.9 + arm.index)
    fast = np.sin(2 * np.pi * (4 * freq[None, :]) * t[:, None] + j[None, :] * 1.7)
    amp = 0.25 + 0.35 * activity[:, None]
    q = mid[None, :] + half[None, :] * (amp * slow + 0.08 * activity[:, None] * fast)
    for k, name in enumerate(arm.joints):
        if name in arm.prismatic:  # insertion: deep while working, out at tool change
            depth = lower[k] + (0.35 + 0.45 * activity) * (upper[k] - lower[k])
            q[:, k] = depth * (1.0 - retraction) + 0.01 * slow[:, k] * half[k]
    return np.clip(q, lower + 1e-6, upper - 1e-6)


def joint_velocities(arm: ArmModel, t: FloatArray, cycle_s: float = 60.0,
                     dt: float = 1e-4) -> FloatArray:
    """Return (n, joints) velocities (central differences of :func:`joint_positions`)."""
    t = np.asarray(t, dtype=np.float64).reshape(-1)
    ahead, behind = joint_positions(arm, t + dt, cycle_s), joint_positions(arm, t - dt, cycle_s)
    return (ahead - behind) / (2 * dt)


def joint_efforts(arm: ArmModel, q: FloatArray, qd: FloatArray) -> FloatArray:
    """Return (n, joints) efforts: a gravity-like term plus viscous friction."""
    gravity = 0.6 * np.sin(q) * (1.0 + 0.1 * np.arange(q.shape[1]))[None, :]
    return gravity + 0.05 * qd


def jaw_positions(arm: ArmModel, t: FloatArray, cycle_s: float = 60.0) -> FloatArray:
    """Return (n, 1) jaw angles: grasping while working, wide open during tool change."""
    t = np.asarray(t, dtype=np.float64).reshape(-1)
    activity, retraction = _phase_weights(t, cycle_s, arm)
    grasp = 0.5 + 0.45 * np.sin(2 * np.pi * 0.8 * t + arm.index)
    jaw = activity * grasp + retraction * 1.2 + (1 - activity - retraction) * 0.3
    return np.clip(jaw, JAW_LIMITS[0], JAW_LIMITS[1])[:, None]


def _quat_mul(a: FloatArray, b: FloatArray) -> FloatArray:
    ax, ay, az, aw = a.T
    bx, by, bz, bw = b.T
    return np.stack([
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
        aw * bw - ax * bx - ay * by - az * bz,
    ], axis=1)


def _axis_quat(angle: FloatArray, axis: int) -> FloatArray:
    q = np.zeros((angle.shape[0], 4))
    q[:, axis] = np.sin(angle / 2)
    q[:, 3] = np.cos(angle / 2)
    return q


def forward_kinematics(arm: ArmModel, q: FloatArray) -> FloatArray:
    """Return (n, 7) tool-tip poses x y z qx qy qz qw around the remote center of motion."""
    yaw, pitch, ins, roll = q[:, 0], q[:, 1], q[:, 2], q[:, 3]
    pos = np.stack([ins * np.sin(yaw) * np.cos(pitch), -ins * np.sin(pitch),
                    -ins * np.cos(yaw) * np.cos(pitch)], axis=1)
    rot = _quat_mul(_quat_mul(_axis_quat(yaw, 1), _axis_quat(pitch, 0)), _axis_quat(roll, 2))
    if q.shape[1] >= 6:
        rot = _quat_mul(_quat_mul(rot, _axis_quat(q[:, 4], 0)), _axis_quat(q[:, 5], 1))
    rot /= np.linalg.norm(rot, axis=1, keepdims=True)
    return np.concatenate([pos, rot], axis=1)


def tip_twist(arm: ArmModel, t: FloatArray, cycle_s: float = 60.0,
              dt: float = 1e-4) -> FloatArray:
    """Return (n, 6) tip twists vx vy vz wx wy wz (finite differences of the pose)."""
    t = np.asarray(t, dtype=np.float64).reshape(-1)
    before = forward_kinematics(arm, joint_positions(arm, t - dt, cycle_s))
    after = forward_kinematics(arm, joint_positions(arm, t + dt, cycle_s))
    linear = (after[:, :3] - before[:, :3]) / (2 * dt)
    qd = joint_velocities(arm, t, cycle_s, dt)
    angular = np.stack([qd[:, 1], qd[:, 0], qd[:, 3]], axis=1)
    return np.concatenate([linear, angular], axis=1)


def tip_wrench(arm: ArmModel, t: FloatArray, cycle_s: float = 60.0) -> FloatArray:
    """Return (n, 6) body wrenches fx fy fz tx ty tz: tissue contact while working."""
    t = np.asarray(t, dtype=np.float64).reshape(-1)
    activity, _ = _phase_weights(t, cycle_s, arm)
    wave = np.sin(2 * np.pi * 1.3 * t + arm.index)[:, None]
    scale = np.array([0.4, 0.3, 1.5, 0.02, 0.02, 0.01])[None, :]
    return activity[:, None] * scale * (0.6 + 0.4 * wave)
