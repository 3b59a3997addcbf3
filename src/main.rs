fn main() {
    let t = std::time::Instant::now();
    let dir = std::path::Path::new("/tmp/theory");
    std::fs::create_dir_all(dir).unwrap();
    let (rows, _files) = dtpsim::theory::run_all(Some(dir)).unwrap();
    for r in rows {
        println!("{:5} {:70} {:45} {:15} {:?}", r.id, r.claim, r.measured, r.expected, r.pass);
    }
    println!("{:?}", t.elapsed());
}
