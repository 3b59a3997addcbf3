//! The IDX format of MNIST and Fashion-MNIST (gzip-compressed or raw): four files in one
//! folder, `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte`
//! and `t10k-labels-idx1-ubyte` (each optionally ending in `.gz`; compression is detected
//! from the gzip magic bytes, not the name).
//!
//! An IDX file is a big-endian header — the magic number `0x00000803` (unsigned bytes, 3
//! dimensions: images × rows × columns) or `0x00000801` (unsigned bytes, 1 dimension:
//! labels), then one 32-bit size per dimension — followed by exactly the product of the
//! sizes in bytes. Every fault (wrong magic, a short header, truncated data, bytes after the
//! data, a damaged gzip stream, label count ≠ image count, a label ≥ the class count) is an
//! error naming the file, the fault and the fix.

use crate::data::{subset_indices, Dataset, Example};
use crate::error::ModelError;
use nalgebra::DVector;
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Environment variable naming the IDX folder when a scenario leaves `task.dir` out.
pub const ENV_DIR: &str = "DTPSIM_FASHION_MNIST";

/// Where Debian's `dataset-fashion-mnist` package installs the four files: the folder used
/// when neither `task.dir` nor [`ENV_DIR`] is set.
pub const DEBIAN_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// Magic number of an IDX file of unsigned-byte images (3 dimensions).
pub const IMAGES_MAGIC: u32 = 0x0000_0803;

/// Magic number of an IDX file of unsigned-byte labels (1 dimension).
pub const LABELS_MAGIC: u32 = 0x0000_0801;

/// The field errors are reported under.
const FIELD: &str = "task.dir";

/// How pixel bytes `v ∈ 0..=255` become inputs. Standardisation statistics come from every
/// image of the training file (never the test file), whatever subset `data.train` selects,
/// so that runs on different subsets see the same inputs.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum PixelScaling {
    /// `v/255`, in `[0, 1]`.
    #[default]
    Unit,
    /// `2v/255 − 1`, in `[−1, 1]`.
    Symmetric,
    /// `(v/255 − μ)/σ` with one mean `μ` and standard deviation `σ` over every pixel of every
    /// training image.
    Standardize,
    /// `(v/255 − μ_i)/σ_i` with the mean and standard deviation of pixel `i` over the training
    /// images; a pixel that is constant in the training file (`σ_i = 0`) is only centred.
    StandardizePerPixel,
}

impl PixelScaling {
    /// A phrase for the data provenance.
    fn describe(self, n_train_file: usize) -> String {
        match self {
            PixelScaling::Unit => "pixels: v/255, in [0, 1]".into(),
            PixelScaling::Symmetric => "pixels: 2v/255 - 1, in [-1, 1]".into(),
            PixelScaling::Standardize => format!(
                "pixels: (v/255 - mean)/std, one mean and std over every pixel of the {n_train_file} training images"
            ),
            PixelScaling::StandardizePerPixel => format!(
                "pixels: (v/255 - mean_i)/std_i, per pixel over the {n_train_file} training images (constant pixels only centred)"
            ),
        }
    }
}

/// The four files of an IDX data set.
#[derive(Debug, Clone, PartialEq)]
pub struct IdxFiles {
    /// Training images (`train-images-idx3-ubyte[.gz]`).
    pub train_images: PathBuf,
    /// Training labels (`train-labels-idx1-ubyte[.gz]`).
    pub train_labels: PathBuf,
    /// Test images (`t10k-images-idx3-ubyte[.gz]`).
    pub test_images: PathBuf,
    /// Test labels (`t10k-labels-idx1-ubyte[.gz]`).
    pub test_labels: PathBuf,
}

/// Images read from an IDX file: `count` images of `rows × cols` bytes, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Images {
    /// Number of images.
    pub count: usize,
    /// Rows per image.
    pub rows: usize,
    /// Columns per image.
    pub cols: usize,
    /// `count · rows · cols` pixel bytes.
    pub pixels: Vec<u8>,
}

impl Images {
    /// Pixels per image.
    pub fn size(&self) -> usize {
        self.rows * self.cols
    }

    /// The pixels of image `i`.
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.size();
        &self.pixels[i * n..(i + 1) * n]
    }
}

fn invalid(path: &Path, message: impl std::fmt::Display) -> ModelError {
    ModelError::Invalid {
        field: FIELD.into(),
        message: format!("{}: {message}", path.display()),
    }
}

/// The folder to read and how it was chosen: `dir` when given, else [`ENV_DIR`] when set and
/// non-empty, else [`DEBIAN_DIR`].
pub fn resolve_dir(dir: Option<&Path>) -> (PathBuf, &'static str) {
    if let Some(d) = dir {
        return (d.to_path_buf(), "task.dir");
    }
    match std::env::var_os(ENV_DIR) {
        Some(v) if !v.is_empty() => (PathBuf::from(v), "$DTPSIM_FASHION_MNIST"),
        _ => (PathBuf::from(DEBIAN_DIR), "the Debian default"),
    }
}

/// What the folder must hold, for error messages.
const FOUR_FILES: &str = "train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte (each raw or gzip-compressed, optionally ending in .gz)";

/// The four files in `dir` (chosen as `how`). Each is looked for as `<set>-<kind>-idx<n>-ubyte`,
/// then with `.gz`, then with a dot before `idx` (`train-images.idx3-ubyte`, as some copies
/// are named).
pub fn find_files(dir: &Path, how: &str) -> Result<IdxFiles, ModelError> {
    if !dir.is_dir() {
        return Err(invalid(
            dir,
            format!(
                "no such folder (chosen by {how}); install Debian's dataset-fashion-mnist package \
                 (apt-get install dataset-fashion-mnist puts the files in {DEBIAN_DIR}), or set \
                 task.dir (relative to the scenario file) or the environment variable {ENV_DIR} \
                 to a folder holding {FOUR_FILES}"
            ),
        ));
    }
    let find = |stem: &str, kind: &str| -> Result<PathBuf, ModelError> {
        let names = [
            format!("{stem}-{kind}-ubyte"),
            format!("{stem}-{kind}-ubyte.gz"),
            format!("{stem}.{kind}-ubyte"),
            format!("{stem}.{kind}-ubyte.gz"),
        ];
        names
            .iter()
            .map(|n| dir.join(n))
            .find(|p| p.is_file())
            .ok_or_else(|| {
                invalid(
                    dir,
                    format!(
                        "holds no {} or {} (chosen by {how}); the folder must hold {FOUR_FILES}",
                        names[0], names[1]
                    ),
                )
            })
    };
    Ok(IdxFiles {
        train_images: find("train-images", "idx3")?,
        train_labels: find("train-labels", "idx1")?,
        test_images: find("t10k-images", "idx3")?,
        test_labels: find("t10k-labels", "idx1")?,
    })
}

/// Opens `path` for reading, decompressing it when it starts with the gzip magic bytes.
fn open(path: &Path) -> Result<(Box<dyn Read>, bool), ModelError> {
    let cannot = |e: std::io::Error| invalid(path, format!("cannot read ({e})"));
    let mut file = std::fs::File::open(path).map_err(cannot)?;
    let mut magic = [0u8; 2];
    let mut got = 0;
    while got < 2 {
        match file.read(&mut magic[got..]).map_err(cannot)? {
            0 => break,
            n => got += n,
        }
    }
    use std::io::Seek;
    file.seek(std::io::SeekFrom::Start(0)).map_err(cannot)?;
    let file = std::io::BufReader::with_capacity(1 << 16, file);
    if got == 2 && magic == [0x1f, 0x8b] {
        Ok((Box::new(flate2::read::MultiGzDecoder::new(file)), true))
    } else {
        Ok((Box::new(file), false))
    }
}

/// Reads as many bytes as `buf` holds or up to the end; a damaged gzip stream is an error.
fn fill(reader: &mut dyn Read, buf: &mut [u8], path: &Path, gz: bool) -> Result<usize, ModelError> {
    let mut got = 0;
    while got < buf.len() {
        match reader.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(read_error(path, gz, e)),
        }
    }
    Ok(got)
}

fn read_error(path: &Path, gz: bool, e: std::io::Error) -> ModelError {
    if gz {
        invalid(
            path,
            format!("the gzip data is truncated or damaged ({e}); download or reinstall the file"),
        )
    } else {
        invalid(path, format!("cannot read ({e})"))
    }
}

/// Reads an IDX file of unsigned bytes with the given magic number: its dimensions and data.
fn read_idx(path: &Path, magic: u32) -> Result<(Vec<usize>, Vec<u8>), ModelError> {
    let (mut reader, gz) = open(path)?;
    let what = |m: u32| match m {
        IMAGES_MAGIC => "images",
        LABELS_MAGIC => "labels",
        _ => "unknown",
    };
    let mut head = [0u8; 4];
    let got = fill(&mut reader, &mut head, path, gz)?;
    if got < 4 {
        return Err(invalid(
            path,
            format!(
                "holds {got} bytes, fewer than the 4-byte IDX magic number; the file is empty or truncated: download or reinstall it"
            ),
        ));
    }
    let found = u32::from_be_bytes(head);
    if found != magic {
        let hint = match found {
            IMAGES_MAGIC | LABELS_MAGIC => format!(
                "this is an IDX {} file where the {} file belongs; check the file names",
                what(found),
                what(magic)
            ),
            _ if head[..2] == [0x1f, 0x8b] => {
                "the data is gzip-compressed twice; decompress it once".to_string()
            }
            _ => {
                "it is not an IDX file of unsigned bytes (or is damaged); download or reinstall it"
                    .to_string()
            }
        };
        return Err(invalid(
            path,
            format!(
                "wrong magic number 0x{found:08x}, expected 0x{magic:08x} (IDX {}); {hint}",
                what(magic)
            ),
        ));
    }
    let ndim = (magic & 0xff) as usize;
    let mut sizes = vec![0u8; 4 * ndim];
    let got = fill(&mut reader, &mut sizes, path, gz)?;
    if got < sizes.len() {
        return Err(invalid(
            path,
            format!(
                "the header is truncated: {} of its {} dimension bytes; download or reinstall the file",
                got,
                sizes.len()
            ),
        ));
    }
    let dims: Vec<usize> = sizes
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    let shape = dims
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join(" × ");
    let expected = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| invalid(path, format!("header announces {shape} bytes, more than can be addressed; the file is damaged")))?;
    // the header's claim bounds the read; the capacity hint is capped so that a damaged
    // header cannot make us allocate more than the file delivers
    let mut data = Vec::with_capacity(expected.min(1 << 28));
    (&mut reader)
        .take(expected as u64)
        .read_to_end(&mut data)
        .map_err(|e| read_error(path, gz, e))?;
    if data.len() < expected {
        return Err(invalid(
            path,
            format!(
                "truncated: holds {} of the {expected} data bytes its header announces ({shape}); download or reinstall the file",
                data.len()
            ),
        ));
    }
    let trailing =
        std::io::copy(&mut reader, &mut std::io::sink()).map_err(|e| read_error(path, gz, e))?;
    if trailing > 0 {
        return Err(invalid(
            path,
            format!(
                "{trailing} bytes follow the {expected} data bytes its header announces ({shape}); the file is damaged or two files were joined: download or reinstall it"
            ),
        ));
    }
    Ok((dims, data))
}

/// Reads an IDX image file (magic `0x00000803`).
pub fn read_images(path: &Path) -> Result<Images, ModelError> {
    let (dims, pixels) = read_idx(path, IMAGES_MAGIC)?;
    let images = Images {
        count: dims[0],
        rows: dims[1],
        cols: dims[2],
        pixels,
    };
    if images.count == 0 || images.size() == 0 {
        return Err(invalid(
            path,
            format!(
                "holds no images ({} images of {} × {} pixels); give a folder with a non-empty data set",
                images.count, images.rows, images.cols
            ),
        ));
    }
    Ok(images)
}

/// Reads an IDX label file (magic `0x00000801`).
pub fn read_labels(path: &Path) -> Result<Vec<u8>, ModelError> {
    Ok(read_idx(path, LABELS_MAGIC)?.1)
}

/// The image count in the header of an IDX image file (reads 8 bytes, decompressing when
/// needed); `None` when the file cannot be read or is not an IDX image file. For estimates.
pub fn image_count(path: &Path) -> Option<usize> {
    let (mut reader, gz) = open(path).ok()?;
    let mut head = [0u8; 8];
    if fill(&mut reader, &mut head, path, gz).ok()? < 8 {
        return None;
    }
    (u32::from_be_bytes([head[0], head[1], head[2], head[3]]) == IMAGES_MAGIC)
        .then(|| u32::from_be_bytes([head[4], head[5], head[6], head[7]]) as usize)
}

/// The training and test image counts of the IDX folder `dir` (or its default), from the
/// headers; `None` when the files are not there. For the memory estimate.
pub fn counts(dir: Option<&Path>) -> Option<(usize, usize)> {
    let (dir, how) = resolve_dir(dir);
    let files = find_files(&dir, how).ok()?;
    Some((
        image_count(&files.train_images)?,
        image_count(&files.test_images)?,
    ))
}

/// Reads one set (images and labels) and checks it against the task.
fn read_set(
    images: &Path,
    labels: &Path,
    inputs: usize,
    classes: usize,
) -> Result<(Images, Vec<u8>), ModelError> {
    let im = read_images(images)?;
    if im.size() != inputs {
        return Err(ModelError::Invalid {
            field: "task.inputs".into(),
            message: format!(
                "{}: images are {} × {} = {} pixels, task.inputs is {inputs}; set task.inputs and network.widths[0] to {}",
                images.display(),
                im.rows,
                im.cols,
                im.size(),
                im.size()
            ),
        });
    }
    let lab = read_labels(labels)?;
    if lab.len() != im.count {
        return Err(invalid(
            labels,
            format!(
                "holds {} labels for the {} images of {}; the label count must equal the image count: the two files belong to different data sets or one is damaged",
                lab.len(),
                im.count,
                images.display()
            ),
        ));
    }
    if let Some(i) = lab.iter().position(|&c| usize::from(c) >= classes) {
        return Err(ModelError::Invalid {
            field: "task.classes".into(),
            message: format!(
                "{}: label {} of example {} is not below task.classes = {classes}; set task.classes (and the last entry of network.widths) to the number of classes",
                labels.display(),
                lab[i],
                i + 1
            ),
        });
    }
    Ok((im, lab))
}

/// Per-pixel affine maps `x_i = (v − shift_i)/div_i` (one entry when global).
struct Affine {
    shift: Vec<f64>,
    div: Vec<f64>,
}

impl Affine {
    fn new(scaling: PixelScaling, train: &Images) -> Affine {
        let global = |shift: f64, div: f64| Affine {
            shift: vec![shift],
            div: vec![div],
        };
        // sums over bytes are exact in integers
        let stats = |sum: u64, squares: u64, n: u64| {
            let mean = sum as f64 / n as f64;
            let var = (squares as f64 / n as f64 - mean * mean).max(0.0);
            let std = var.sqrt();
            // a constant pixel (σ = 0) is only centred
            (mean, if std > 1e-9 { std } else { 1.0 })
        };
        match scaling {
            PixelScaling::Unit => global(0.0, 255.0),
            PixelScaling::Symmetric => global(127.5, 127.5),
            PixelScaling::Standardize => {
                let (mut s, mut q) = (0u64, 0u64);
                for &v in &train.pixels {
                    s += u64::from(v);
                    q += u64::from(v) * u64::from(v);
                }
                let (mean, std) = stats(s, q, train.pixels.len() as u64);
                // x = (v/255 − μ/255)/(σ/255) = (v − μ)/σ in byte units
                global(mean, std)
            }
            PixelScaling::StandardizePerPixel => {
                let n = train.size();
                let (mut s, mut q) = (vec![0u64; n], vec![0u64; n]);
                for img in train.pixels.chunks_exact(n) {
                    for (i, &v) in img.iter().enumerate() {
                        s[i] += u64::from(v);
                        q[i] += u64::from(v) * u64::from(v);
                    }
                }
                let (shift, div) = (0..n)
                    .map(|i| stats(s[i], q[i], train.count as u64))
                    .unzip();
                Affine { shift, div }
            }
        }
    }

    fn apply(&self, img: &[u8]) -> DVector<f64> {
        if self.shift.len() == 1 {
            let (m, k) = (self.shift[0], self.div[0]);
            DVector::from_iterator(img.len(), img.iter().map(|&v| (f64::from(v) - m) / k))
        } else {
            DVector::from_iterator(
                img.len(),
                img.iter()
                    .enumerate()
                    .map(|(i, &v)| (f64::from(v) - self.shift[i]) / self.div[i]),
            )
        }
    }
}

/// The examples `keep` of a set, one-hot over `classes`.
fn examples(
    im: &Images,
    lab: &[u8],
    keep: &[usize],
    affine: &Affine,
    classes: usize,
) -> Vec<Example> {
    keep.iter()
        .map(|&i| {
            let mut y = DVector::zeros(classes);
            y[usize::from(lab[i])] = 1.0;
            Example {
                x: affine.apply(im.image(i)),
                y,
            }
        })
        .collect()
}

/// The IDX data set in `dir` (see [`resolve_dir`]): `n_train`/`n_test` examples (a seeded
/// random subset in file order, as for CSV files; `None`: every image), pixels scaled by
/// `scaling`, labels one-hot over `classes`.
pub fn load(
    dir: Option<&Path>,
    scaling: PixelScaling,
    inputs: usize,
    classes: usize,
    n_train: Option<usize>,
    n_test: Option<usize>,
    seed: u64,
) -> Result<Dataset, ModelError> {
    let (dir, how) = resolve_dir(dir);
    let files = find_files(&dir, how)?;
    let (train_im, train_lab) =
        read_set(&files.train_images, &files.train_labels, inputs, classes)?;
    let (test_im, test_lab) = read_set(&files.test_images, &files.test_labels, inputs, classes)?;
    let pick = |set: &str, path: &Path, total: usize, n: Option<usize>, seed: u64| {
        let name = |p: &Path| p.display().to_string();
        match n {
            Some(n) if n > total => Err(ModelError::Invalid {
                field: format!("data.{set}"),
                message: format!(
                    "asks for {n} examples but {} holds {total}; give at most {total}, or null for every image",
                    name(path)
                ),
            }),
            Some(n) if n < total => Ok((
                subset_indices(total, n, seed),
                format!(
                    "{set}: {n} of the {total} images of {} (seeded random subset)",
                    name(path)
                ),
            )),
            _ => Ok((
                (0..total).collect(),
                format!("{set}: {total} examples, every image of {}", name(path)),
            )),
        }
    };
    let (train_keep, train_note) =
        pick("train", &files.train_images, train_im.count, n_train, seed)?;
    let (test_keep, test_note) = pick(
        "test",
        &files.test_images,
        test_im.count,
        n_test,
        seed.wrapping_add(1),
    )?;
    let affine = Affine::new(scaling, &train_im);
    let train = examples(&train_im, &train_lab, &train_keep, &affine, classes);
    let test = examples(&test_im, &test_lab, &test_keep, &affine, classes);
    Ok(Dataset {
        train,
        test,
        classification: true,
        provenance: vec![
            train_note,
            test_note,
            format!(
                "labels: {} classes, from {} and {}; folder chosen by {how}",
                classes,
                files.train_labels.display(),
                files.test_labels.display()
            ),
            scaling.describe(train_im.count),
        ],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes of an IDX file: magic, sizes, data.
    pub(crate) fn idx_bytes(magic: u32, dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut out = magic.to_be_bytes().to_vec();
        for d in dims {
            out.extend_from_slice(&d.to_be_bytes());
        }
        out.extend_from_slice(data);
        out
    }

    fn gz(bytes: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("dtpsim-idx-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn raw_and_gzip_files_read_the_same() {
        let dir = scratch("unit-gz");
        let data: Vec<u8> = (0..3 * 2 * 2).map(|v| v as u8 * 20).collect();
        let bytes = idx_bytes(IMAGES_MAGIC, &[3, 2, 2], &data);
        std::fs::write(dir.join("a"), &bytes).unwrap();
        std::fs::write(dir.join("b.gz"), gz(&bytes)).unwrap();
        let a = read_images(&dir.join("a")).unwrap();
        let b = read_images(&dir.join("b.gz")).unwrap();
        assert_eq!(a, b);
        assert_eq!((a.count, a.rows, a.cols), (3, 2, 2));
        assert_eq!(a.image(1), &data[4..8]);
        assert_eq!(image_count(&dir.join("b.gz")), Some(3));
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn faults_are_named() {
        let dir = scratch("unit-faults");
        let p = dir.join("f");
        let case = |bytes: Vec<u8>, needle: &str| {
            std::fs::write(&p, &bytes).unwrap();
            let e = read_images(&p).unwrap_err().to_string();
            assert!(e.contains(needle) && e.contains("task.dir"), "{e}");
            assert!(e.contains(&p.display().to_string()), "{e}");
            std::fs::write(&p, gz(&bytes)).unwrap();
            let e = read_images(&p).unwrap_err().to_string();
            assert!(e.contains(needle), "gz: {e}");
        };
        let good = idx_bytes(IMAGES_MAGIC, &[2, 2, 2], &[1; 8]);
        case(
            idx_bytes(LABELS_MAGIC, &[8], &[1; 8]),
            "wrong magic number 0x00000801, expected 0x00000803",
        );
        case(
            good[..good.len() - 1].to_vec(),
            "truncated: holds 7 of the 8 data bytes",
        );
        case(
            [good.clone(), vec![0, 0]].concat(),
            "2 bytes follow the 8 data bytes",
        );
        case(good[..10].to_vec(), "header is truncated");
        case(vec![0, 0], "fewer than the 4-byte IDX magic number");
        case(
            idx_bytes(IMAGES_MAGIC, &[0, 28, 28], &[]),
            "holds no images",
        );
        // a gzip stream cut short
        let z = gz(&good);
        std::fs::write(&p, &z[..z.len() - 6]).unwrap();
        let e = read_images(&p).unwrap_err().to_string();
        assert!(e.contains("gzip data is truncated or damaged"), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn scalings_map_bytes_as_documented() {
        // two images of two pixels: pixel 0 is 0 and 255, pixel 1 is constant 51
        let train = Images {
            count: 2,
            rows: 1,
            cols: 2,
            pixels: vec![0, 51, 255, 51],
        };
        let apply = |s| Affine::new(s, &train).apply(&[255, 51]);
        assert_eq!(apply(PixelScaling::Unit).as_slice(), &[1.0, 0.2]);
        let sym = apply(PixelScaling::Symmetric);
        assert!(sym[0] == 1.0 && (sym[1] + 0.6).abs() < 1e-15, "{sym}");
        let p = apply(PixelScaling::StandardizePerPixel);
        assert!((p[0] - 1.0).abs() < 1e-12 && p[1] == 0.0, "{p}");
        // global: mean 89.25, over all four values
        let g = Affine::new(PixelScaling::Standardize, &train);
        let all: Vec<f64> = [0u8, 51, 255, 51]
            .iter()
            .map(|&v| g.apply(&[v])[0])
            .collect();
        let mean = all.iter().sum::<f64>() / 4.0;
        let var = all.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 4.0;
        assert!(mean.abs() < 1e-12 && (var - 1.0).abs() < 1e-12, "{all:?}");
    }
}
