"""Draw a robot's legs as its spec file declares them: each leg's geoms in a colour of its own
(lighter further down), the torso and anything in no leg grey, its legs bent to the middle of
their joint ranges, with a legend of the legs' bodies and actuators.

    MUJOCO_GL=osmesa python scripts/legs_figure.py \\
        [examples/own_robot/strider.toml] [--out docs/own-robot/strider-legs.png]

Regenerates the picture in docs/own-robot.md. The robot stands at its initial position, seen
from the side view of ``adapt sims render`` (``--camera`` for another); a robot name
(``quadruped``) works as well as a spec file.
"""

from __future__ import annotations

import argparse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COLOURS = [(0.89, 0.35, 0.13), (0.16, 0.50, 0.73), (0.30, 0.69, 0.29), (0.60, 0.31, 0.64),
           (0.95, 0.77, 0.06), (0.10, 0.74, 0.74)]
GREY = (0.55, 0.55, 0.55)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("robot", nargs="?", default=str(ROOT / "examples/own_robot/strider.toml"))
    parser.add_argument("--out", default=str(ROOT / "docs/own-robot/strider-legs.png"))
    parser.add_argument("--camera", default="side")
    args = parser.parse_args()

    import matplotlib
    import mujoco

    matplotlib.use("Agg")
    import matplotlib.patches as mpatches
    import matplotlib.pyplot as plt

    from sims.physics import Physics
    from sims.registry import get_robot
    from sims.render import render_frame

    robot = get_robot(args.robot)
    model = robot.spec().compile()  # a copy to paint: the robot's cached model stays as it is
    colour_of = {}
    for leg, colour in zip(robot.legs, COLOURS, strict=False):
        ids = sorted(model.body(b).id for b in leg.bodies)  # a child's id is above its parent's
        for depth, body in enumerate(ids):  # each segment further down a little lighter
            colour_of[body] = tuple(c + (1 - c) * 0.3 * depth / max(len(ids) - 1, 1)
                                    for c in colour)
    for g in range(model.ngeom):
        if model.geom_bodyid[g] != 0:
            model.geom_matid[g] = -1
            model.geom_rgba[g] = (*colour_of.get(int(model.geom_bodyid[g]), GREY), 1.0)
    physics = Physics(robot, model)
    for j in range(model.njnt):  # legs bent: each limited hinge of a leg at its range's middle
        if (model.jnt_bodyid[j] in colour_of and model.jnt_limited[j]
                and model.jnt_type[j] == mujoco.mjtJoint.mjJNT_HINGE):
            physics.data.qpos[model.jnt_qposadr[j]] = model.jnt_range[j].mean()
    mujoco.mj_forward(model, physics.data)
    frame = render_frame(physics, 640, 400, camera=args.camera)

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    ax.imshow(frame)
    ax.set_axis_off()
    handles = [mpatches.Patch(color=c, label=f"leg {leg.name}: bodies {', '.join(leg.bodies)}; "
                                             f"actuators {', '.join(leg.actuators)}")
               for leg, c in zip(robot.legs, COLOURS, strict=False)]
    handles.append(mpatches.Patch(color=GREY, label=f"torso {robot.torso!r} and its subtree "
                                                    "outside the legs"))
    ax.legend(handles=handles, loc="upper left", fontsize=7, framealpha=0.85)
    ax.set_title(f"{robot.name}: its legs as declared (lighter: further from the torso)",
                 fontsize=10)
    fig.tight_layout(pad=0.2)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    print(f"wrote {out} ({out.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
