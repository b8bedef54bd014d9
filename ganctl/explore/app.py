"""The page of `ganctl explore`: Gradio controls over an `Explorer`. Every control's change redraws its
image, with the `ganctl sample` command that writes the same picture beside it. An uploaded image is
projected into G (the session's own latent, kept in the page's state) and the direction controls edit it. A bad value (a seed
typed into the API, a style range G does not have) is a message in the page for that request: it
never reaches another user's, and the server goes on."""

from __future__ import annotations

import functools
import os
import shlex
from typing import Any, Callable, Optional

# Set before Gradio is imported: no telemetry or version check (they would reach the internet).
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import gradio as gr  # noqa: E402

from ganctl.errors import GanctlError  # noqa: E402
from ganctl.explore.images import Explorer  # noqa: E402
from ganctl.projection import NoDistance  # noqa: E402

# Small images (28 px digits) are enlarged in the page: keep their pixels square, not blurred.
CSS = ".pixels img { image-rendering: pixelated; width: 100% !important; height: 100% !important; object-fit: contain; }"
MAX_SLIDER_SEED = 9999  # the seed sliders' range (and so the API's): ganctl sample --seed takes any
FROM_SEED, FROM_UPLOAD = "seed", "projected upload"  # where the direction tab's latent comes from
PROJECTION_STEPS = 100  # the page's default: a quick projection (`ganctl project` takes 1000)


def answering(render: Callable[..., Any]) -> Callable[..., Any]:
    """`render` for one request: a GanctlError (or torch's refusal of a value) becomes a message in
    the page (gr.Error) instead of an error page, and the server keeps serving everyone."""

    @functools.wraps(render)
    def answer(*values: Any) -> Any:
        try:
            return render(*values)
        except GanctlError as error:
            raise gr.Error(str(error), print_exception=False) from None
        except (ValueError, RuntimeError, TypeError) as error:
            raise gr.Error(f"Cannot draw that: {str(error).splitlines()[0][:300]}", print_exception=False) from None

    return answer


def class_option(explorer: Explorer, class_name: Optional[str]) -> str:
    return f" --class {class_name}" if explorer.classes is not None and class_name not in (None, "") else ""


def psi_option(truncation: Any) -> str:
    return "" if float(truncation) == 1 else f" --truncation {float(truncation):g}"


def build(explorer: Explorer, title: str, source: str) -> gr.Blocks:
    """The page: the shared controls (truncation, class), then one tab per way of steering G. `source`:
    the checkpoint or run directory as the commands under the images name it."""
    run = shlex.quote(source)

    def seed_image(seed: float, truncation: float, class_name: Optional[str] = None) -> tuple[Any, str]:
        image = explorer.seed_image(seed, truncation, class_name)
        return image, f"ganctl sample {run} --seed {int(seed)} --num 1{psi_option(truncation)}{class_option(explorer, class_name)}"

    def mixed_image(row_seed: float, column_seed: float, layers: str, truncation: float,
                    class_name: Optional[str] = None) -> tuple[Any, str]:
        image = explorer.mixed_image(row_seed, column_seed, layers, truncation, class_name)
        return image, (f"ganctl sample {run} --mix-rows {int(row_seed)} --mix-cols {int(column_seed)} --mix-layers {layers}"
                       f"{psi_option(truncation)}{class_option(explorer, class_name)}  (the bottom-right cell)")

    def walk_image(first_seed: float, second_seed: float, frames: float, position: float, truncation: float,
                   class_name: Optional[str] = None, space: Optional[str] = None) -> tuple[Any, str]:
        image = explorer.walk_image(first_seed, second_seed, frames, position, truncation, class_name, space)
        space_option = f" --space {space}" if space else ""
        return image, (f"ganctl sample {run} --interpolate --seeds {int(first_seed)},{int(second_seed)} --frames {int(frames)}"
                       f"{space_option}{psi_option(truncation)}{class_option(explorer, class_name)}  (frame {int(position)})")

    directions = shlex.quote(explorer.directions_file) if explorer.directions_file else "dirs.npy"
    made_by = "" if explorer.directions_file else f"  (dirs.npy: ganctl directions {run} --out dirs.npy)"

    def direction_image(seed: float, index: float, strength: float, truncation: float, class_name: Optional[str] = None,
                        start: str = FROM_SEED, latents_file: Optional[str] = None) -> tuple[Any, str]:
        if start == FROM_UPLOAD:
            image = explorer.direction_image(seed, index, strength, truncation, class_name, latents_file or "")
            return image, (f"ganctl sample {run} --latents projected.pt --direction {directions}:{int(index)} "
                           f"--strength={float(strength):g}{psi_option(truncation)}  (projected.pt: the file above){made_by}")
        image = explorer.direction_image(seed, index, strength, truncation, class_name)
        return image, (f"ganctl sample {run} --direction {directions}:{int(index)} --strength={float(strength):g} --seed {int(seed)} "
                       f"--num 1{psi_option(truncation)}{class_option(explorer, class_name)}{made_by}")

    def projected_image(upload: Optional[str], steps: float, class_name: Optional[str] = None) -> tuple[Any, str, str, str, str]:
        image, latents_file = explorer.projected(upload, steps, class_name)
        pixels_only = " --perceptual-weight 0" if isinstance(explorer.distance, NoDistance) else ""
        command = (f"ganctl project {run} IMAGE --steps {int(steps)}{class_option(explorer, class_name)}{pixels_only} --out projected  "
                   "(its latents.pt: the file above)")
        return image, latents_file, command, latents_file, FROM_UPLOAD

    conditional = explorer.classes is not None
    with gr.Blocks(title=title, analytics_enabled=False) as page:
        gr.Markdown(f"## {title}\nMove a slider and G answers. Under each image: the `ganctl sample` command that writes "
                    "the same picture.")
        with gr.Row():
            truncation = gr.Slider(0, 1, value=1, step=0.05, label="truncation psi (1: none)", elem_id="truncation")
            # An unconditional G has no class control: a State stands in (it is no parameter of the API).
            chosen_class = (gr.Dropdown(list(explorer.classes), value=explorer.classes[0], label="class", elem_id="class")
                            if conditional else gr.State(None))
        shared = [truncation, chosen_class]
        with gr.Tab("Seed"):
            seed = gr.Slider(0, MAX_SLIDER_SEED, value=0, step=1, label="seed", elem_id="seed")
            seed_picture = gr.Image(format="png", type="numpy", label="G(seed)", interactive=False, elem_id="seed-image",
                                    elem_classes="pixels", height=320, buttons=["download", "fullscreen"])
            seed_command = gr.Textbox(label="the same picture from the command line", interactive=False, elem_id="seed-command")
        listen([seed, *shared], answering(seed_image), [seed, *shared], [seed_picture, seed_command], "seed_image", page)
        if explorer.has_styles:
            with gr.Tab("Style mixing"):
                with gr.Row():
                    row_seed = gr.Slider(0, MAX_SLIDER_SEED, value=1, step=1, label="row seed: the styles it keeps", elem_id="row-seed")
                    column_seed = gr.Slider(0, MAX_SLIDER_SEED, value=2, step=1, label="column seed: the styles it gives",
                                            elem_id="column-seed")
                    layers = gr.Dropdown(["coarse", "middle", "fine"], value="coarse", allow_custom_value=True, elem_id="layers",
                                         label="styles from the column seed (coarse, middle, fine, or indices A-B)")
                mixed_picture = gr.Image(format="png", type="numpy", label="mixed", interactive=False, elem_id="mix-image",
                                         elem_classes="pixels", height=320, buttons=["download", "fullscreen"])
                mixed_command = gr.Textbox(label="the same picture from the command line", interactive=False)
            mixing = [row_seed, column_seed, layers, *shared]
            listen(mixing, answering(mixed_image), mixing, [mixed_picture, mixed_command], "mixed_image", page)
        with gr.Tab("Walk"):
            with gr.Row():
                first_seed = gr.Slider(0, MAX_SLIDER_SEED, value=1, step=1, label="from seed", elem_id="first-seed")
                second_seed = gr.Slider(0, MAX_SLIDER_SEED, value=2, step=1, label="to seed", elem_id="second-seed")
                frames = gr.Slider(1, 64, value=16, step=1, label="frames", elem_id="frames")
            # Its range follows the frames in the page; the API (no page) checks it against the frames asked for.
            position = gr.Slider(0, 64, value=8, step=1, label="position on the walk (0: from seed, frames: to seed)",
                                 elem_id="position")
            space = (gr.Radio(["w", "z"], value="w", label="space (W: the mapping network's)", elem_id="space")
                     if explorer.has_styles else gr.State(None))
            walk_picture = gr.Image(format="png", type="numpy", label="walk", interactive=False, elem_id="walk-image",
                                    elem_classes="pixels", height=320, buttons=["download", "fullscreen"])
            walk_command = gr.Textbox(label="the same picture from the command line", interactive=False)
            frames.change(lambda count, at: gr.Slider(maximum=int(count), value=min(int(at), int(count))), [frames, position],
                          position, api_name=False)
        walking = [first_seed, second_seed, frames, position, *shared, space]
        listen(walking, answering(walk_image), walking, [walk_picture, walk_command], "walk_image", page)
        if explorer.directions:
            with gr.Tab("Direction"):
                with gr.Row():
                    index = gr.Slider(0, len(explorer.directions) - 1, value=0, step=1, elem_id="direction",
                                      label=f"direction ({explorer.directions_file or 'SeFa, strongest first'})")
                    strength = gr.Slider(-10, 10, value=0, step=0.1, label="strength", elem_id="strength")
                with gr.Row():
                    start = gr.Radio([FROM_SEED, FROM_UPLOAD], value=FROM_SEED, label="edit the latent of", elem_id="start")
                    direction_seed = gr.Slider(0, MAX_SLIDER_SEED, value=0, step=1, label="seed", elem_id="direction-seed")
                direction_picture = gr.Image(format="png", type="numpy", label="edited", interactive=False,
                                             elem_id="direction-image", elem_classes="pixels", height=320,
                                             buttons=["download", "fullscreen"])
                direction_command = gr.Textbox(label="the same picture from the command line", interactive=False,
                                               elem_id="direction-command")
                gr.Markdown("**Project an image**: upload one and G's closest image (its latent) becomes the one the direction "
                            "edits; the class above is the class it is projected as (conditional runs).")
                with gr.Row():
                    upload = gr.File(label="an image to project", type="filepath", elem_id="upload")
                    steps = gr.Slider(1, 1000, value=PROJECTION_STEPS, step=1, label="projection steps", elem_id="steps")
                with gr.Row():
                    projected_picture = gr.Image(format="png", type="numpy", label="reconstruction", interactive=False,
                                                 elem_id="projected-image", elem_classes="pixels", height=320)
                    projected_file = gr.File(label="projected.pt (its latent)", interactive=False, elem_id="projected-file")
                project_command = gr.Textbox(label="the same projection from the command line", interactive=False)
                project_button = gr.Button("Project again")
            # This session's projected latent (a file): each user's own, never another's.
            latents_file = gr.State(None)
            editing = [direction_seed, index, strength, *shared, start, latents_file]
            listen(editing, answering(direction_image), editing, [direction_picture, direction_command], "direction_image", page)
            projecting = [upload, steps, chosen_class]
            projected = [projected_picture, projected_file, project_command, latents_file, start]
            for event, name in ((upload.upload, "project_image"), (project_button.click, False)):
                event(answering(projected_image), projecting, projected, api_name=name).success(
                    answering(direction_image), editing, [direction_picture, direction_command], api_name=False, show_progress="hidden")
    return page


def listen(controls: list, render: Callable[..., Any], inputs: list, outputs: list, name: str, page: gr.Blocks) -> None:
    """Redraw `outputs` when any control changes (while a slider is dragged, the newest value once the
    previous drawing is done) and when the page loads; the event is the page's API endpoint `/<name>`."""
    triggers = [control for control in controls if not isinstance(control, gr.State)]
    for index, trigger in enumerate(triggers):
        trigger.change(render, inputs, outputs, api_name=name if index == 0 else False, show_progress="hidden",
                       trigger_mode="always_last")
    page.load(render, inputs, outputs, api_name=False, show_progress="hidden")


def serve(explorer: Explorer, title: str, source: str, host: str, port: Optional[int], block: bool = True) -> tuple[gr.Blocks, str]:
    """Start the page on host:port (a free port from 7860 up when None): (the page, its URL). With
    block, serve until Ctrl-C; otherwise return at once (the caller closes the page)."""
    page = build(explorer, title, source)
    page.queue(default_concurrency_limit=1)  # one drawing at a time: the requests share G
    _, url, _ = page.launch(server_name=host, server_port=port, share=False, inbrowser=False, prevent_thread_lock=True,
                            show_error=True, quiet=True, ssr_mode=False, mcp_server=False, pwa=False, footer_links=["api"],
                            css=CSS)
    if block:
        from ganctl.console import console

        console.print(f"Explore {title} at {url} (Ctrl-C to stop)")
        try:
            page.block_thread()
        finally:
            page.close()
    return page, url
